from crosspark.cli import main

main()
