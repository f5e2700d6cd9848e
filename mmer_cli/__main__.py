from mmer_cli.cli import main

main()
