"""The browser labeling app behind `simulate annotate`: people label a run's episodes.

    labelstore.py   the one door to the run's label store (an answer = one durable shard)
    queue.py        questions per episode, the queue's order, filters, overlap, disputes
    guard.py        token, cross-site protection, Content-Security-Policy
    server.py       the Starlette app: queue, episode and agreement pages; answer and undo
    templates/      Jinja2 pages (autoescaped)      static/   the app's own JS and CSS

Starlette and uvicorn are core dependencies (the agent's model proxy serves with them too).
"""
