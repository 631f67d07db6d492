"""Where backups live: the S3 backup store, the retention policy and its application on S3, client-
side encryption.
"""
