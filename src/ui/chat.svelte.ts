// The chat panel: each message is answered by the adapter picked in "Answer with" (the current one,
// any library adapter, or none: the base model), and by a second pick to compare side by side. All
// answers come from one worker with one copy of the base weights: the engine swaps the LoRA weights
// it applies before each side (useAdapter), and the replies stream into their columns in turn.
import type { TemplateName } from '../data/templates.ts';
import type { GenerateOptions } from '../worker/api.ts';
import { callback, type Engine } from './engine.ts';
import { framePrompt, type PromptFormat } from './prompt.ts';
import { readable, type Readable } from './readable.ts';

export type ChatPhase = 'idle' | 'generating' | 'failed';

/** 'base' (no adapter), 'current' (the trained run's or the imported adapter), or a library id. */
export type Pick = string;
export const BASE: Pick = 'base';
export const CURRENT: Pick = 'current';
/** The compare pick that asks nobody else. */
export const NONE: Pick = 'none';

export interface Answer {
  pick: Pick;
  label: string;
  text: string;
  streaming: boolean;
}

export interface Turn {
  prompt: string;
  answers: Answer[];
}

export interface Sampling {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

/** The picks a message goes to, compared side first (left), for whether an adapter is current. */
export function sidesOf(primary: Pick, against: Pick, hasCurrent: boolean): Pick[] {
  const real = (p: Pick) => (p === CURRENT && !hasCurrent ? BASE : p);
  const a = real(primary);
  if (against === NONE) return [a];
  const b = real(against);
  return b === a ? [a] : [b, a];
}

export class Chat {
  phase = $state<ChatPhase>('idle');
  turns = $state<Turn[]>([]);
  sampling = $state<Sampling>({ maxNewTokens: 48, temperature: 0, topK: 40, topP: 0.95, seed: 0 });
  format = $state<PromptFormat>('trained');
  /** Who answers. */
  primary = $state<Pick>(CURRENT);
  /** Who else answers the same prompt, side by side (the base model by default, as before an adapter exists). */
  against = $state<Pick>(BASE);
  error = $state<Readable | undefined>();
  private stopped = false;

  constructor(private readonly engine: Engine) {}

  /** A pick that no longer exists (its adapter deleted) goes back to the default. */
  forget(id: Pick): void {
    if (this.primary === id) this.primary = CURRENT;
    if (this.against === id) this.against = BASE;
  }

  async send(message: string, template: TemplateName | undefined, hasAdapter: boolean, label: (p: Pick) => string = (p) => p): Promise<void> {
    const text = message.trim();
    if (!text || this.phase === 'generating') return;
    const framed = framePrompt(text, this.format, template);
    const sides = sidesOf(this.primary, this.against, hasAdapter);
    this.turns.push({ prompt: text, answers: sides.map((pick) => ({ pick, label: label(pick), text: '', streaming: false })) });
    const turn = this.turns[this.turns.length - 1]; // the reactive proxy, not the plain object
    this.phase = 'generating';
    this.error = undefined;
    this.stopped = false;
    try {
      for (const answer of turn.answers) {
        if (this.stopped) break;
        answer.streaming = true;
        const adapter = answer.pick !== BASE;
        if (adapter) await this.engine.useAdapter(answer.pick === CURRENT ? null : answer.pick);
        const opts: GenerateOptions = { adapter, chat: framed.chat, ...this.sampling };
        const onText = callback((piece: string) => {
          answer.text += piece;
        });
        // The return value is the whole reply; it replaces the streamed pieces so the column ends
        // exactly as the engine decoded it.
        answer.text = await this.engine.generate(framed.text, opts, onText);
        answer.streaming = false;
      }
      this.phase = 'idle';
    } catch (e) {
      this.error = readable(e);
      this.phase = 'failed';
    } finally {
      for (const a of turn.answers) a.streaming = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    try {
      await this.engine.stopGeneration();
    } catch (e) {
      this.error = readable(e);
    }
  }

  clear(): void {
    this.turns = [];
  }
}
