from clients.cli._app import main

main()
