-- A batch_id reused for different changes is a client bug; remember what each batch
-- carried so a retry can be told apart from a reuse (409 instead of a silent drop).
ALTER TABLE sync_batches ADD COLUMN request_hash bytea;
