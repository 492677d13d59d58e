"""Digital twins of survey respondents: who answers (respondents), what they are asked (surveys,
guides), and how close their answers come to the real people's (validation)."""
