// Comlink turns a thrown Error into {message, name, stack} and rebuilds a plain Error, so a
// GpuOutOfMemoryError thrown in the worker would arrive as "Error". We wrap comlink's "throw"
// handler so our typed errors cross as {name, code, message, hint, details} and are rebuilt into
// their class on the other side. Install it on both sides of the boundary.
import { transferHandlers, type TransferHandler } from 'comlink';
import { WebtuneError, reviveError, type ErrorData } from '../errors.ts';

type Thrown = { value: unknown };
type Wire = { isError: true; webtune: ErrorData } | unknown;

let installed = false;

export function installErrorTransfer(): void {
  if (installed) return;
  installed = true;
  const original = transferHandlers.get('throw') as TransferHandler<Thrown, unknown>;
  const handler: TransferHandler<Thrown, Wire> = {
    canHandle: original.canHandle,
    serialize(thrown) {
      if (thrown.value instanceof WebtuneError) return [{ isError: true, webtune: thrown.value.toJSON() }, []];
      return original.serialize(thrown);
    },
    deserialize(wire) {
      const w = wire as { webtune?: ErrorData };
      if (w && typeof w === 'object' && w.webtune) throw reviveError(w.webtune);
      return original.deserialize(wire);
    },
  };
  transferHandlers.set('throw', handler as TransferHandler<unknown, unknown>);
}
