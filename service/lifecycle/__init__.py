"""The account's lifecycle and the person's data rights: erasure, export and consent."""
