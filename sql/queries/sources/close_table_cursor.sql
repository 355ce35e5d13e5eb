-- Frees a table source's held cursor and the server-side copy of its rows (else kept until the session ends).
CLOSE {cursor}
