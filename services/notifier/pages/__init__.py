"""The chief's pages behind the link in an alert message."""
