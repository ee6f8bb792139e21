from babelfish.web.process import main

main()
