from services.endpoint.cli import main

main()
