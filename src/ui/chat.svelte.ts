// The chat panel: each message goes to the base model and to the fine-tuned one, one after the
// other on the same worker (one copy of the weights; the adapter is switched per call), and both
// replies stream into their columns.
import type { TemplateName } from '../data/templates.ts';
import type { GenerateOptions } from '../worker/api.ts';
import { callback, type Engine } from './engine.ts';
import { framePrompt, type PromptFormat } from './prompt.ts';
import { readable, type Readable } from './readable.ts';

export type ChatPhase = 'idle' | 'generating' | 'failed';

export interface Turn {
  prompt: string;
  base: string;
  tuned: string;
  /** Which side is streaming now, if any. */
  streaming: 'base' | 'tuned' | undefined;
}

export interface Sampling {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

export class Chat {
  phase = $state<ChatPhase>('idle');
  turns = $state<Turn[]>([]);
  sampling = $state<Sampling>({ maxNewTokens: 48, temperature: 0, topK: 40, topP: 0.95, seed: 0 });
  format = $state<PromptFormat>('trained');
  /** Also ask the base model (side by side); off answers with the adapter only. */
  compare = $state(true);
  error = $state<Readable | undefined>();
  private stopped = false;

  constructor(private readonly engine: Engine) {}

  async send(message: string, template: TemplateName | undefined, hasAdapter: boolean): Promise<void> {
    const text = message.trim();
    if (!text || this.phase === 'generating') return;
    const framed = framePrompt(text, this.format, template);
    this.turns.push({ prompt: text, base: '', tuned: '', streaming: undefined });
    const turn = this.turns[this.turns.length - 1]; // the reactive proxy, not the plain object
    this.phase = 'generating';
    this.error = undefined;
    this.stopped = false;
    const sides: ('base' | 'tuned')[] = hasAdapter ? (this.compare ? ['base', 'tuned'] : ['tuned']) : ['base'];
    try {
      for (const side of sides) {
        if (this.stopped) break;
        turn.streaming = side;
        const opts: GenerateOptions = { adapter: side === 'tuned', chat: framed.chat, ...this.sampling };
        const onText = callback((piece: string) => {
          turn[side] += piece;
        });
        // The return value is the whole reply; it replaces the streamed pieces so the column ends
        // exactly as the engine decoded it.
        turn[side] = await this.engine.generate(framed.text, opts, onText);
      }
      this.phase = 'idle';
    } catch (e) {
      this.error = readable(e);
      this.phase = 'failed';
    } finally {
      turn.streaming = undefined;
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
