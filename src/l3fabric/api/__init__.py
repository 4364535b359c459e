"""HTTP API of the controller: Neutron v2.0 (/v2.0) and the fabric API (/v1)."""
