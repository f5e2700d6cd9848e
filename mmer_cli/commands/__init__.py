"""One module per `mmer` sub-command; each parses options, calls one library function, renders."""
