from services.localcloud.server import main

main()
