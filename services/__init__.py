"""Services: one per job (chat, twins, crm, insight). The only product code that runs compiled graphs;
they own persistence, identity and ownership checks, validation of outside input, run stores and caches."""
