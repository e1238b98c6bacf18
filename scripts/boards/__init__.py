"""The Grafana boards, one module each, built from the panel kit in `kit.py`."""
