from services.endpoint.server import main

main()
