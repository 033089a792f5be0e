"""Stubs generated from proto/mmsearch/v1/mmsearch.proto by generate.sh (do not edit)."""
