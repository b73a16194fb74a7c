from amqp_server.cli import main

main()
