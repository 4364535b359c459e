"""Resource types and their validation (pydantic), shared by the API and services."""
