"""The weekly briefing pack (giao ban): headline figures, chart, ranking with movement,
laggards with their explanations, last week's commitments checked; HTML, PDF, XLSX.

It lives in the notifier because the notifier owns what the pack adds to the board: the
briefing schedule (its alert policy), the briefing's ranking, and the explanations."""
