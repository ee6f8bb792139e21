from babelfish.web.server import main

main()
