// A typed event a component raises and others follow: subscribers come and go through the unsubscribe
// function on() returns, so no component is wired to another after construction.

export class Topic<T = void> {
  readonly #subscribers = new Set<(value: T) => void>();

  /** Calls `fn` on every emit from now on, until the returned function is called. */
  on(fn: (value: T) => void): () => void {
    const subscriber = (value: T): void => fn(value);
    this.#subscribers.add(subscriber);
    return () => { this.#subscribers.delete(subscriber); };
  }

  emit(value: T): void {
    for (const fn of [...this.#subscribers]) fn(value);
  }
}
