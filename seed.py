"""Seed the database named by DATABASE_URL with the demo data (same as `atomchat seed`).

DATABASE_URL=postgresql://postgres@127.0.0.1:5432/atomchat python seed.py
"""

import sys

from atomchat_server.cli import main

if __name__ == "__main__":
    sys.exit(main(["seed", *sys.argv[1:]]))
