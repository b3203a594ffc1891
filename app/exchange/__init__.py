"""The exchange process (``python -m app exchange``): the only process that talks to exchanges."""
