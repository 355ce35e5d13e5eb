-- The outcome of one delivery: :status is sent, pending (retry on a later tick) or failed (gave up).
UPDATE alerts_sent
SET status = :status,
    attempts = attempts + :attempts,
    last_error = :last_error,
    sent_at = CASE WHEN :status = 'sent' THEN now() ELSE sent_at END
WHERE id = :id
