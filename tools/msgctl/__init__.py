"""msgctl: the operator's and developer's command-line tool."""
