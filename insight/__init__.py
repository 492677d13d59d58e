"""Customer insight: seeded order history, a live order stream (Redis Streams), RFM + GMM segments.

orders.py     Order model, product catalogue, seeded history generator (SQLite under PERSONAGRAPH_HOME)
simulator.py  publishes live orders to a Redis Stream at a configurable rate
store.py      live customer state in Redis hashes (idempotent order application, segment sizes)
segments.py   RFM features, GMM fit, segment names from centroids, scheduled refit, model report
consumer.py   consumer-group reader: apply orders exactly once, re-score the customer's segment
stats.py      exact figures per segment / customer from a snapshot of the live state
profiles.py   segment profile documents rebuilt from live stats, indexed in Chroma
source.py     where live data is read from (Redis, an in-process demo, or the history): one object per owner
facts.py      exact figures for one question, refused outside its scope (called by the insight_qa graph)
questions.py  question and router-mode validation
"""
