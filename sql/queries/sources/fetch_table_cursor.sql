-- The next page of a table source's held cursor (declare_table_cursor); fewer rows than {page} means the
-- table is read. {page} is a literal: FETCH takes no bind parameters.
FETCH FORWARD {page} FROM {cursor}
