from tools.loadgen.peer.server import main

main()
