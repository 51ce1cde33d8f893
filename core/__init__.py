"""Kassa's core process: invoices, payments, ledger, events, webhooks, payouts.

Layers, top to bottom (tests/unit/test_import_graph.py keeps every import
pointing down):
  main.py, server.py, ctl.py   start, wire and operate the process
  api/                         the gRPC edge: parse, authorise, call, render
  render/                      domain rows to protobuf messages
  areas                        merchants, invoices, payments, chain, ledger,
                               events, webhooks, rates, payouts, reconcile —
                               each its pure deciders, its store and its
                               settings
  errors.py, names.py, domain/ refusals, resource names, assets and money
  store/                       the connection pool and migrations
"""
