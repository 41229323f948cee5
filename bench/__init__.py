"""The harness: runs, evaluation, records, leaderboard, forge CLI. No algorithm logic lives here."""
