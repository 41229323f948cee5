"""``python -m bench.leaderboard``: see :mod:`bench.leaderboard`."""

from bench.leaderboard import main

main()
