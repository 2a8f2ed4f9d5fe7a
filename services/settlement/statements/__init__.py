"""Owner statements: the HTML page (`render_html`) and its PDF (`StatementPrinter`,
`write_statements`), from `flexfleet.settlement.statement.Statement`."""
