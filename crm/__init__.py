"""Brand-tone CRM messages: catalog, request validation, checks, Chroma index, service, CLI, DPO export.

The graph is graphs/crm_message.py; its nodes are nodes/crm.py and the shared nodes/tone.py.
"""
