/// PostgreSQL backends join the suite when a server is given (see the Postgres backend's tests).
enum PostgresBackend {
    static var all: [Backend] { [] }
}
