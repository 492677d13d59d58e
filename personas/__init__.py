"""Personas: profiles, speech rules, world knowledge and story timelines shipped under data/personas/."""
