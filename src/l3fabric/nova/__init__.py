"""Working with Nova: external events to Nova's API (``events``), and the
metadata service VMs reach at 169.254.169.254 (``metadata``)."""
