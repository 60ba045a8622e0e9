"""``python -m brokers.paper [options]``: run the paper venue without Django."""

from brokers.paper.server import main

if __name__ == "__main__":
    main()
