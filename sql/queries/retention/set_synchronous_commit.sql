-- Sets the session's synchronous_commit and returns the value it replaces, to be restored afterwards.
SELECT current_setting('synchronous_commit') AS previous, set_config('synchronous_commit', :mode, false) AS now
