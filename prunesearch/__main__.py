from prunesearch.cli import run

run()
