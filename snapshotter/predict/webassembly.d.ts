// The part of the WebAssembly JavaScript API that gru-output.ts uses. Node
// has the whole API as a global, but TypeScript declares it only in its DOM
// and web-worker libraries, which describe globals Node does not have.
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
  function validate(bytes: Uint8Array): boolean;
}
