"""The build pipeline: parse, chunk, embed, write a generation; engines, spool and caches."""
