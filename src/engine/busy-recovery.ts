/**
 * Work-around for @libsql/client 0.18.0 `file:` clients (libsql-client-ts#352, libsql-js#237, unfixed): a
 * statement that failed with SQLITE_BUSY is left in progress on its pooled connection until garbage collection
 * finalizes it. Until then every COMMIT on that connection fails ("SQL statements in progress"), and an
 * autocommit write there reports success without committing while it keeps the write lock, which stalls every
 * other process. Reopening the client's connections right after the failure drops the statement. Local
 * statements run synchronously, so when the failed call's promise settles no other call holds a connection
 * (interactive transactions aside, which the engine never opens).
 */
import type { Client } from "@libsql/client";
import { classifyError } from "./errors.ts";

const recovering = new WeakSet<Client>();

export function reopenAfterBusy(client: Client): Client {
  if (client.protocol !== "file" || recovering.has(client)) return client;
  const recover = (thrown: unknown): never => {
    if (classifyError(thrown).code.startsWith("SQLITE_BUSY")) void client.reconnect();
    throw thrown;
  };
  const proxy = new Proxy(client, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      const method = value as (...args: unknown[]) => unknown;
      if (property !== "execute" && property !== "batch") return method.bind(target);
      return (...args: unknown[]) => (method.apply(target, args) as Promise<unknown>).catch(recover);
    },
  });
  recovering.add(proxy);
  return proxy;
}
