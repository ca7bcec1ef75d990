"""ops: SRE API and console: DLQ inspection and replay."""
