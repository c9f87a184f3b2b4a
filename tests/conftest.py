"""Suite-wide plugins: the secret scan of every log record (secret_scan.py) and pytester (to test it)."""

pytest_plugins = ["secret_scan", "pytester"]
