"""The HTTP feature server (``crmfs serve``; needs ``pip install 'crmfs[server]'``)."""
