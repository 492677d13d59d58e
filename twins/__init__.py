"""Digital twins of survey respondents: who answers (respondents), what they answer (surveys),
how (answering), at scale and resumable (batch), and the CLI entry points (cli)."""
