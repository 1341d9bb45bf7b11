"""The lot system (车场系统): gate decisions, local store, card cache, outbox, statement intake."""
