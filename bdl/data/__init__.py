"""Dataset readers, label tables, transforms and the demo domain pair."""
