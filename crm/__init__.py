"""Brand-tone CRM messages, the domain: catalog, request validation, checks, the review index, preferences.

The graph is graphs/crm_message.py; its nodes are nodes/crm.py and the shared nodes/tone.py; the
service that runs it (result cache, batches, timings) is services/crm.py; the CLI is cli/crm.py.
"""
