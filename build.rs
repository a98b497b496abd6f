// sqlx's migrate! embeds the migration folders at compile time: rebuild when a migration is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=src/store/sqlite/migrations");
    println!("cargo:rerun-if-changed=src/store/postgres/migrations");
}
