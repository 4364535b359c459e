"""Who the caller is: authenticators (``--auth none|tokens|keystone``) and the token file."""
