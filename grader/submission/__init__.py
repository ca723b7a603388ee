"""Reading untrusted submissions (folders, zips, notebooks) and checking them statically; nothing runs here."""
